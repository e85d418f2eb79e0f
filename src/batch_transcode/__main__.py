"""``python -m batch_transcode`` runs the command-line interface."""

from batch_transcode._cli import main

raise SystemExit(main())
