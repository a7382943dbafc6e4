"""Integrations with the frameworks applications already use: Django's email backend, a pytest plugin.

Not imported by ``import flowmailer``; each integration is imported on its own and needs its framework installed.
"""

__all__: list[str] = []
