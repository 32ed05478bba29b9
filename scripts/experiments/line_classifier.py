#!/usr/bin/env python3
"""Experiment (2026-11-30): would a learned line classifier generalise to unseen emitters better than
the regex library, alone or beside it? Development rows only; the held-out split is never read.

    pip install scikit-learn
    python3 scripts/experiments/line_classifier.py 23,24,25 [ROUND=SUITE_LOG ...]

For each round r: a logistic regression on character 3-5-grams and word 1-2-grams (digits and hex
folded) is trained on the development rows of rounds < r and scored on round r's development rows
(forward-chained, as a round is met when it is mined). With `r=LOG`, LOG is the output of
`oom_corpus::development_split --exact --nocapture` run with the library as it stood when round r was
mined (EPITAPH_SIGNATURES_UNDER_TEST=<that commit's config/signatures.toml>): its MISS / FALSE lines
give the library's as-mined answers on round r's raw lines, and the script prints the combinations
(library OR classifier above a high threshold, library AND classifier above a low one).
Result (BENCHMARKS.md "OOM recognition"): on rounds 23-25 no combination beats the library alone; with
round 26, "library and classifier >= 0.2" read about +3 points precision for -0.4 recall. Built as a
veto on the generic tier (commit 8585b85) and read once on the held-out split, it traded one-for-one
(38 false alarms fewer, 38 deaths missed more), and was reverted.
"""
import glob
import itertools
import os
import re
import sys

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_union

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'corpus', 'oom')
HOLDOUT_PERCENT = 30


def fnv1a(text, seed=0):
    h = 0xcbf29ce484222325 ^ seed
    for b in text.encode():
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def dev_rows():
    """The development split as tests/suite/oom_corpus.rs cuts it (first occurrence of a line wins)."""
    seen, out = set(), []
    for path in sorted(glob.glob(os.path.join(ROOT, '*.tsv'))):
        rnd = 3
        for n, raw in enumerate(open(path, encoding='utf-8').read().split('\n'), 1):
            if raw.startswith('# round:'):
                rnd = int(raw.split(':')[1])
                continue
            if raw.startswith('#') or not raw.strip():
                continue
            cols = raw.split('\t', 4)
            if len(cols) != 5 or cols[4] in seen:
                continue
            seen.add(cols[4])
            if fnv1a(cols[4]) % 100 < HOLDOUT_PERCENT:
                continue
            out.append(dict(at='%s:%d' % (os.path.basename(path), n), rnd=rnd, oom=cols[0] == 'oom', line=cols[4]))
    return out


def fold(text):
    text = re.sub(r'0x[0-9a-f]+', ' hx ', text.lower())
    return re.sub(r'[0-9]+', '0', text)


def library_answers(log):
    """(file.tsv:line, text) pairs the library got wrong, from a development_split log."""
    wrong = set()
    for raw in open(log, encoding='utf-8'):
        m = re.match(r'\s*(?:MISS|FALSE) \S*?([^/\s]+\.tsv:\d+) \[[^\]]*\] got \S+: (.*)$', raw.rstrip('\n'))
        if m:
            wrong.add((m.group(1), m.group(2)))
    return wrong


def score(name, results, decide):
    tp = sum(1 for y, lib, p in results if decide(lib, p) and y)
    fp = sum(1 for y, lib, p in results if decide(lib, p) and not y)
    fn = sum(1 for y, lib, p in results if not decide(lib, p) and y)
    print('%-34s precision %.3f  recall %.3f  (TP %d, FP %d, FN %d)'
          % (name, tp / max(1, tp + fp), tp / max(1, tp + fn), tp, fp, fn))


def main():
    rounds = [int(r) for r in sys.argv[1].split(',')]
    logs = dict(a.split('=', 1) for a in sys.argv[2:])
    rows = dev_rows()
    results = []
    for r in rounds:
        train = [x for x in rows if x['rnd'] < r]
        test = [x for x in rows if x['rnd'] == r]
        vec = make_union(
            TfidfVectorizer(analyzer='char_wb', ngram_range=(3, 5), min_df=2, sublinear_tf=True),
            TfidfVectorizer(analyzer='word', ngram_range=(1, 2), token_pattern=r'[a-z_]+', sublinear_tf=True))
        model = LogisticRegression(C=10, max_iter=3000, class_weight='balanced')
        model.fit(vec.fit_transform([fold(x['line']) for x in train]), [x['oom'] for x in train])
        probs = model.predict_proba(vec.transform([fold(x['line']) for x in test]))[:, 1]
        wrong = library_answers(logs[str(r)]) if str(r) in logs else None
        part = []
        for x, p in zip(test, probs):
            lib = None if wrong is None else x['oom'] != ((x['at'], x['line']) in wrong)
            part.append((x['oom'], lib, p))
        score('round %d: classifier alone' % r, part, lambda lib, p: p >= 0.5)
        results += part
    score('all: classifier alone (p >= 0.5)', results, lambda lib, p: p >= 0.5)
    if all(lib is not None for _, lib, _ in results):
        score('all: library as mined', results, lambda lib, p: lib)
        for hi in (0.8, 0.9, 0.95):
            score('library or classifier >= %.2f' % hi, results, lambda lib, p, hi=hi: lib or p >= hi)
        for lo in (0.1, 0.2, 0.3):
            score('library and classifier >= %.2f' % lo, results, lambda lib, p, lo=lo: lib and p >= lo)
        for lo, hi in itertools.product((0.2, 0.3), (0.9, 0.95)):
            score('(library and >= %.2f) or >= %.2f' % (lo, hi), results,
                  lambda lib, p, lo=lo, hi=hi: (lib and p >= lo) or p >= hi)


if __name__ == '__main__':
    main()
