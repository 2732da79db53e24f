"""A scripted, slow engine for the Stop / Redirect tests that run a real kernel (test_kernel_stop, test_browser).

It drives the real EditDecoder path: each session plays the next script of `queue` (`head` when the queue is
empty), then repeats `tail` forever, one token per `delay` seconds, so a test decides when a stream ends.

    engine = SlowEngine(tokenizer, head=[...], tail=token_id)
    engine.serve(get_ipython(), "slow")     # %%spark --model slow ... now streams from it
"""
from __future__ import annotations

import time

import numpy as np


class SlowEngine:
    def __init__(self, tokenizer, head, tail, delay=0.04):
        self.tokenizer, self.head, self.tail, self.delay = tokenizer, list(head), tail, delay
        self.queue, self.prompts, self.feeds = [], [], []  # feeds: the time of every forward call

    def session(self):
        return _Session(self, iter(self.queue.pop(0) if self.queue else self.head))

    def serve(self, shell, name):
        """Answer `--model NAME` in the shell's %%spark with this engine; any other model loads as usual."""
        spark = shell.magics_manager.registry["SparkMagics"].session
        load = spark.engine_for
        spark.engine_for = lambda model=None, wafer=None: self if model == name else load(model, wafer)


class _Session:
    wafer_s = 0.0

    def __init__(self, engine, script):
        self.engine, self.script, self.fed = engine, script, False

    def feed(self, ids):
        e = self.engine
        if not self.fed:
            e.prompts.append(list(ids))
            self.fed = True
        e.feeds.append(time.time())
        time.sleep(e.delay)
        logits = np.zeros(e.tokenizer.vocab_size, np.float32)
        logits[next(self.script, e.tail)] = 1.0
        return logits
