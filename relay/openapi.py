"""The relay's OpenAPI description, served at /openapi.json (for clients and schemathesis)."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "description": "Refused; nothing was enqueued.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_ACCEPTED = {"description": "Accepted (jobs enqueued, or nothing new); empty body."}
_RETRY = {**_ERROR, "description": "Broker or Redis unavailable; retry later."}
_CONNECTION = {
    "name": "connection",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "maxLength": 64},
}
_ZOHO_IDS = {
    "oneOf": [
        {"type": "array", "items": {"type": "string", "pattern": "^[0-9]{1,30}$"}},
        {"type": "string", "description": "One id, or several comma-separated."},
    ]
}
_MODULE = {"type": "string", "enum": ["Quotes", "Sales_Orders", "Invoices", "Purchase_Orders"]}
_OPERATION = {
    "type": "string",
    "enum": ["insert", "create", "update", "edit", "delete", "approve"],
}
_XERO_EVENT = {
    "type": "object",
    "required": [
        "resourceUrl",
        "resourceId",
        "eventDateUtc",
        "eventType",
        "eventCategory",
        "tenantId",
        "tenantType",
    ],
    "properties": {
        "resourceUrl": {"type": "string"},
        "resourceId": {"type": "string"},
        "eventDateUtc": {"type": "string"},
        "eventType": {"type": "string", "description": "CREATE, UPDATE (others are logged)"},
        "eventCategory": {
            "type": "string",
            "description": "INVOICE and CREDITNOTE are acted on; CONTACT, SUBSCRIPTION and any "
            "other category are logged",
        },
        "tenantId": {"type": "string"},
        "tenantType": {"type": "string", "description": "ORGANISATION, APPLICATION"},
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "zxsync relay",
        "version": "1.0.0",
        "description": "Webhook intake: Xero (signed) and Zoho CRM (shared token) to Celery jobs.",
    },
    "paths": {
        "/webhooks/xero": {
            "post": {
                "summary": "Xero webhook deliveries and intent-to-receive checks",
                "parameters": [
                    {
                        "name": "x-xero-signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "base64(HMAC-SHA256(raw body, webhook key))",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": [
                                    "events",
                                    "firstEventSequence",
                                    "lastEventSequence",
                                    "entropy",
                                ],
                                "properties": {
                                    "events": {"type": "array", "items": _XERO_EVENT},
                                    "firstEventSequence": {"type": "integer", "minimum": 0},
                                    "lastEventSequence": {"type": "integer", "minimum": 0},
                                    "entropy": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ACCEPTED,
                    "401": _ERROR,
                    "413": _ERROR,
                    "503": _RETRY,
                },
            }
        },
        "/webhooks/zoho/{connection}": {
            "post": {
                "summary": "Zoho CRM workflow webhook (token in ?token= or X-Zxs-Token)",
                "parameters": [
                    _CONNECTION,
                    {"name": "token", "in": "query", "schema": {"type": "string"}},
                    {"name": "X-Zxs-Token", "in": "header", "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["module", "id"],
                                "properties": {
                                    "module": _MODULE,
                                    "id": _ZOHO_IDS,
                                    "operation": _OPERATION,
                                    "event_id": {"type": "string", "maxLength": 100},
                                },
                            }
                        },
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "module": _MODULE,
                                    "id": {"type": "string"},
                                    "operation": _OPERATION,
                                },
                            }
                        },
                    }
                },
                "responses": {
                    "200": _ACCEPTED,
                    "400": _ERROR,
                    "401": _ERROR,
                    "404": _ERROR,
                    "413": _ERROR,
                    "415": _ERROR,
                    "503": _RETRY,
                },
            }
        },
        "/webhooks/zoho/{connection}/notifications": {
            "post": {
                "summary": "Zoho CRM Notification API callback (the channel's token in the body)",
                "parameters": [_CONNECTION],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["module", "ids", "operation", "token"],
                                "properties": {
                                    "module": _MODULE,
                                    "ids": _ZOHO_IDS,
                                    "operation": _OPERATION,
                                    "token": {"type": "string", "maxLength": 50},
                                    "channel_id": {"type": ["string", "integer"]},
                                    "server_time": {"type": "integer"},
                                    "resource_uri": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ACCEPTED,
                    "400": _ERROR,
                    "401": _ERROR,
                    "404": _ERROR,
                    "413": _ERROR,
                    "503": _RETRY,
                },
            }
        },
        "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Up."}}}},
    },
}
