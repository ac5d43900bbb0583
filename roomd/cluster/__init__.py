"""Node-to-node links for a multi-node room router (not wired to anything yet)."""
