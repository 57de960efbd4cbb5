"""Storage for memory-agent: settings, backends, transcript, memories and sessions."""
