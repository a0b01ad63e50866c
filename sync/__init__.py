"""opportunity-sync: Salesforce and Gong opportunities from BigQuery (Fivetran) into Postgres."""
