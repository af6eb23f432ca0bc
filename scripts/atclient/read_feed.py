"""Reads a Guild builder feed with the Python AT Protocol SDK's stock subscription client
(`atproto_subscription.SubscriptionClient`), pointed at `coop.guild.feed.subscribe`, and
prints one JSON line per frame it decoded: {"t": ..., "seq": ...} for messages, or
{"error": ..., "message": ...} for an error frame. Stops after the `#info ReplayComplete`
message, an error frame, or 60 seconds.

Usage: read_feed.py WS_BASE TOKEN CURSOR   (WS_BASE: ws://host:port/xrpc)
"""

import json
import sys
import threading

from atproto_subscription import SubscriptionClient
from atproto_subscription.exceptions import SubscriptionError


def main() -> int:
    base, token, cursor = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = SubscriptionClient(
        method="coop.guild.feed.subscribe",
        base_uri=base,
        params={"cursor": cursor, "token": token},
    )
    out = []

    def on_message(frame) -> None:
        out.append({"t": frame.type, "seq": frame.body.get("seq"), "body": frame.body})
        if frame.type == "#info" and frame.body.get("name") == "ReplayComplete":
            client.stop()

    timer = threading.Timer(60, client.stop)
    timer.start()
    try:
        client.start(on_message)
    except SubscriptionError as e:
        out.append({"error": str(e)})
    finally:
        timer.cancel()
    for line in out:
        print(json.dumps(line, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
