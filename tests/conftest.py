"""Settings for the whole suite."""

import signal

# A suite started in the background by a non-interactive shell (`make test &`, CI wrappers)
# inherits SIGINT ignored, and so would every process the tests start: the tests that stop a
# CLI or a pytest run with SIGINT would wait forever. Catching it here gives the children the
# default disposition again (a caught signal is reset on exec, an ignored one is not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
