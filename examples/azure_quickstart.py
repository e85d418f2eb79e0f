"""Convert a folder of videos to MP3 on Azure Batch.

    export AZURE_BATCH_ENDPOINT=https://<account>.<region>.batch.azure.com
    export AZURE_BATCH_ACCOUNT=<account>  AZURE_BATCH_ACCESS_KEY=<key>   # or sign in (Entra ID)
    export AZURE_STORAGE_CONNECTION_STRING='<connection string>'         # or AZURE_STORAGE_ACCOUNT
    python examples/azure_quickstart.py [FOLDER]     # default: generated sample videos

No Azure at hand? ``batch-transcode emulator`` prints these variables for an
offline Azure (Azurite and the Batch emulator) on this machine.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from batch_transcode import AzureConfig, ConfigError, TranscodeSession, find_media
from batch_transcode.samples import make_sample_media

#: What one node of the pool costs per hour, for the estimate (see the Azure price list).
PRICE_PER_NODE_HOUR = 0.096


def main() -> int:
    try:
        config = AzureConfig.from_env(dedicated_nodes=2)
    except ConfigError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            videos = find_media([sys.argv[1]])
        else:
            videos = make_sample_media(Path(tmp) / "videos", count=4)
        with TranscodeSession(config) as session:
            print(session.plan(videos, price_per_node_hour=PRICE_PER_NODE_HOUR))
            # The session id names the pool, job and containers; should this process die,
            # TranscodeSession.attach(session_id, config, output_dir=...) picks the job up.
            report = session.convert(videos, output_dir="azure-quickstart-out", show_progress=True)
    # Leaving the session removed the pool, the job and the containers.
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
