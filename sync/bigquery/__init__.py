"""The source side: BigQuery SQL, discovery, the run's result and its slices, probe, keyset cursor."""
