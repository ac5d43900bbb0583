"""Who may call roomd: UserSig and URL signers, login tokens and their revocations."""
