"""Reading a finished or partly finished sweep back from its job directories, and reporting it."""
