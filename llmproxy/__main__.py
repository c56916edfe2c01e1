"""``python -m llmproxy`` → the command line."""
from .cli import main

raise SystemExit(main())
