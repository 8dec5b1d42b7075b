"""REST API: thin views over the services; permissions in `annotation.access`."""
