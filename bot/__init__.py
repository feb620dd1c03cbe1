"""The Telegram bot (aiogram 3) that restores photos through the TorchServe prediction API."""
