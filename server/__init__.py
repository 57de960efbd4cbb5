"""The HTTP server and the command line of memory-agent."""
