"""The Fivetran webhook: a signed ``sync_end`` starts the sync within seconds (``main.py::fivetran_webhook``)."""
