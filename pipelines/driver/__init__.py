"""What runs on the driver or a scheduler around a job: flags, --plan, the Airflow helpers."""
