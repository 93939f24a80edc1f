"""Hostile clients (issue 18): generated client ids that say nothing about
each other, a bound on one client's subscriptions, log lines a client
cannot forge or flood, and a login slow-down that an attack on one user
cannot turn against another.

Timeouts are upper bounds for waiting, never pass/fail timing.
"""
import re
import unittest

from corelib import (REFERENCE, connect, log_offset, start_broker, subscribe,
                     wait_log_line)

AUTO_ID = re.compile(r" as (auto-[0-9a-f]+) ")


@unittest.skipIf(REFERENCE, "secbroker's generated ids and log lines")
class TestGeneratedIds(unittest.TestCase):
    def auto_ids(self, b, n):
        ids = []
        for _ in range(n):
            off = log_offset(b)
            connect(self, b, client_id="")
            line = wait_log_line(self, b, "New client connected", " as auto-", offset=off)
            ids.append(AUTO_ID.search(line).group(1))
        return ids

    def test_auto_ids_are_random_128_bit(self):
        """Each generated id carries 128 bits from the CSPRNG: any two differ in
        many bits, and no arithmetic relation links consecutive ones (the old
        generator was base + k * constant under an invertible mix, so one id
        gave all the others)."""
        b = start_broker(self)
        ids = self.auto_ids(b, 6)
        vals = []
        for i in ids:
            self.assertRegex(i, r"^auto-[0-9a-f]{32}$")
            vals.append(int(i[5:], 16))
        self.assertEqual(len(set(vals)), len(vals))
        for x in range(len(vals)):
            for y in range(x + 1, len(vals)):
                # 128 random bits differ in 64 +- 5.7 on average; 24 is 7 sigma out
                self.assertGreater(bin(vals[x] ^ vals[y]).count("1"), 24, (ids[x], ids[y]))
        m64 = (1 << 64) - 1
        for seq in vals, [v & m64 for v in vals], [self.unmix(v & m64) for v in vals]:
            steps = {(seq[k + 1] - seq[k]) & m64 for k in range(len(seq) - 1)}
            self.assertGreater(len(steps), 1, "ids are base + k * step (under x ^= x >> 31)")

    @staticmethod
    def unmix(y):
        x = y
        for _ in range(3):
            x = y ^ (x >> 31)
        return x


@unittest.skipIf(REFERENCE, "secbroker's max_subscriptions_per_client")
class TestSubscriptionLimit(unittest.TestCase):
    def test_filters_past_the_limit_are_refused(self):
        """max_subscriptions_per_client bounds the distinct filters of one session:
        new filters past it get 0x80, a filter it already holds is still granted
        (a re-subscribe), other clients are unaffected, one log line per SUBSCRIBE."""
        b = start_broker(self, conf="max_subscriptions_per_client 5\n")
        c = connect(self, b)
        off = log_offset(b)
        got = subscribe(c, [("a/%d" % i, 1) for i in range(8)])
        self.assertEqual(got, [1] * 5 + [0x80] * 3)
        line = wait_log_line(self, b, "Refused 3 filters", "max_subscriptions_per_client 5",
                             offset=off)
        self.assertIn(c.client_id, line)
        self.assertEqual(subscribe(c, [("a/0", 2), ("b/x", 0)]), [2, 0x80])
        other = connect(self, b)
        self.assertEqual(subscribe(other, [("a/%d" % i, 0) for i in range(5)]), [0] * 5)

    def test_default_limit_allows_many(self):
        """The default (100000) leaves ordinary clients alone."""
        b = start_broker(self)
        c = connect(self, b)
        self.assertEqual(subscribe(c, [("d/%d" % i, 0) for i in range(3000)]), [0] * 3000)


if __name__ == "__main__":
    unittest.main()
