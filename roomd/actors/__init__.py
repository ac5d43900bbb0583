"""The actor runtime and the actors: rooms, one directory per kind, the IM actor, the root."""
