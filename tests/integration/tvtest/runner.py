"""Running the test_* cases of one test file: a line per case ("ok", "SKIP" for a missing
capability, "FAIL" with its traceback), then the closing line and the exit code ctest reads
(1 if any case failed, SKIP = 77 with the reasons if a capability was missing, else 0)."""
import time
import traceback

from .caps import Unavailable
from .procs import SKIP


def cases(module_globals, only=()):
    """The test_* functions of a test file in name order; only those named in only, if any."""
    return [v for k, v in sorted(module_globals.items())
            if k.startswith("test_") and callable(v) and (not only or k in only)]


class Results:
    """What the cases of one file came to. run() each case, fail() for a failure outside one
    (a server's exit status), then return exit_code() from main."""

    def __init__(self, ntests):
        self.ntests = ntests
        self.failed = 0
        self.skipped = []

    def run(self, t, *args):
        """t(*args), reported on one line; True when it passed."""
        start = time.monotonic()
        try:
            t(*args)
            print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - start))
            return True
        except Unavailable as e:
            self.skipped.append("%s: %s" % (t.__name__, e))
            print("SKIP %s: %s" % (t.__name__, e))
        except Exception:
            self.failed += 1
            print("FAIL " + t.__name__)
            traceback.print_exc()
        return False

    def fail(self, what):
        self.failed += 1
        print("FAIL " + what)

    def exit_code(self):
        if self.failed:
            print("%d of %d tests failed" % (self.failed, self.ntests))
            return 1
        print("%d of %d tests passed" % (self.ntests - len(self.skipped), self.ntests))
        if self.skipped:  # ctest's SKIP: a capability is missing here, the reasons are above
            print("SKIP: " + "; ".join(self.skipped))
            return SKIP
        return 0
