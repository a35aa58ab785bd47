"""The categories a catalog package may be filed under (`category:`), with what each holds."""

from __future__ import annotations

CATEGORIES: dict[str, str] = {
    "ai": "local AI: language models, chat front ends, image generation",
    "automation": "workflows and integrations between services",
    "data": "databases, caches, object storage and time series",
    "dev": "git hosting, CI, editors and developer tools",
    "files": "file sync, sharing, documents and backups",
    "home": "home automation, MQTT, Zigbee, IoT",
    "media": "streaming of movies, TV, music, photos and books",
    "monitoring": "metrics, logs, dashboards and uptime checks",
    "network": "DNS, ad blocking, VPN and reverse proxies",
    "productivity": "dashboards, recipes, feeds and other everyday tools",
    "security": "passwords, single sign-on and access control",
    "web": "websites, blogs and content management",
}
