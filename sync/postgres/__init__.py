"""The sink side: connections, transactions, writes, rejections, purge, migrations."""
