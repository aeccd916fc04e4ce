"""labserver: the shared team server, MLflow's tracking server plus the lab plugin (`create_app`)."""
