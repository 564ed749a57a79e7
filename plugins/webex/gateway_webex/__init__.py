"""callgate-webex: Webex Calling as a telephony source for callgate.

Per-user OAuth login, per-user ``telephony_calls`` webhooks (Webex has no organisation-wide
call webhooks), signed deliveries parsed into canonical call events, recordings resolved at
delivery time, click-to-call through Call Controls. See README.md.
"""

__version__ = "0.1.0"
