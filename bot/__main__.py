"""`python -m bot`: the Slack bot (see bot/app.py)."""

from .main import main

main()
