"""The history: where events, alerts, rejects and TLS statistics are kept, and how they are read.

Write side (:mod:`.store`, :mod:`.positions`, :mod:`.maintenance`) and read side
(:mod:`.views`, :mod:`.query`, the saved hunts) live together because they share
one layout. See ``docs/ARCHITECTURE.md``.
"""
