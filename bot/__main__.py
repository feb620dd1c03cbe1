"""``python -m bot`` starts the Telegram bot (configured by environment variables)."""

from .app import main

raise SystemExit(main())
