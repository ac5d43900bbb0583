"""Where log lines go and how log files are kept."""
