"""The runtime's HTTP transport: thin routes that hand off to the registry and the repository."""
