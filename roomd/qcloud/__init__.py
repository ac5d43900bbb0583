"""Pure Tencent Cloud protocol code: signing, UserSig, IM request building.

Nothing here does I/O, keeps state or imports trio; callers pass the time in.
"""
