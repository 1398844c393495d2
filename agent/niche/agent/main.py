"""The niche-agent command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .agent import Agent
from .config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="niche-agent",
                                 description="GPIO over MQTT, one sandboxed process per line")
    ap.add_argument("--config", "-c", required=True, help="the agent's TOML configuration")
    ap.add_argument("--check", action="store_true", help="check the configuration and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ns = ap.parse_args(argv)
    # journald adds time and unit; a level and the logger name are enough
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load(ns.config)
    except ConfigError as e:
        for err in e.errors:
            print(f"{ns.config}: {err}", file=sys.stderr)
        print(f"{ns.config}: {len(e.errors)} error(s)", file=sys.stderr)
        return 2
    if ns.check:
        print(f"{ns.config}: OK: agent {cfg.agent_id} on board {cfg.board_name}, "
              f"{len(cfg.lines)} lines, {len(cfg.drivers)} drivers, prefix {cfg.mqtt.prefix}")
        return 0
    agent = Agent(cfg)

    def stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("niche.agent").info("%s: stopping", signal.Signals(signum).name)
        agent.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    try:
        return agent.run()
    except Exception as e:  # a fault we could not recover from: say it, exit non-zero
        logging.getLogger("niche.agent").critical("%s: %s", type(e).__name__, e, exc_info=ns.verbose)
        return 1
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
