"""``python -m orchestrator`` is ``critpath``."""
try:
    from .entry import main
except KeyboardInterrupt:  # a Ctrl-C before ``entry`` could install its handlers: the same quiet exit
    raise SystemExit(130) from None

if __name__ == "__main__":
    main()
