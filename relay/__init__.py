"""The relay: webhook intake from Xero and Zoho, turned into Celery jobs (`zxsync relay`)."""
