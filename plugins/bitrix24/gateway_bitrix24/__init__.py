"""callgate's Bitrix24 CRM plugin: external telephony app (sink), click-to-call, OAuth."""

__version__ = "0.1.0"
