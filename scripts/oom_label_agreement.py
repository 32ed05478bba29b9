#!/usr/bin/env python3
"""Labelling agreement on the sourced OOM corpus: how often two labellers working alone from one line
(and the emitter's name), the shared rules and LABELLING.md give the corpus' label.

    python3 scripts/oom_label_agreement.py [tests/corpus/oom/audit/agreement-2026-11-30.tsv]

Joins the audit file's lines to the corpus (tests/corpus/oom/*.tsv) by their text and prints, for each
labeller, precision / recall / agreement / Cohen's kappa of `oom` against the corpus label, then the
two labellers against each other. `leave` (too ambiguous to label from one line) drops the row from
that comparison. Standard library only.
"""
import glob
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'corpus', 'oom')


def corpus_labels():
    labels = {}
    for path in sorted(glob.glob(os.path.join(ROOT, '*.tsv'))):
        for raw in open(path, encoding='utf-8'):
            if raw.startswith('#') or not raw.strip():
                continue
            cols = raw.rstrip('\n').split('\t', 4)
            if len(cols) == 5:
                labels.setdefault(cols[4], cols[0])
    return labels


def compare(name, pairs):
    tp = fp = fn = tn = left = 0
    for ref, hyp in pairs:
        if 'leave' in (ref, hyp):
            left += 1
            continue
        r, h = ref == 'oom', hyp == 'oom'
        tp += r and h
        fp += h and not r
        fn += r and not h
        tn += not r and not h
    n = tp + fp + fn + tn
    if n == 0:
        print('%-22s no rows (%d left out)' % (name, left))
        return
    agree = (tp + tn) / n
    chance = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    print('%-22s %4d rows (%d left out)  precision %.3f  recall %.3f  agreement %.3f  kappa %.3f  (TP %d, FP %d, FN %d)'
          % (name, n, left, tp / max(1, tp + fp), tp / max(1, tp + fn), agree, (agree - chance) / (1 - chance), tp, fp, fn))


def main():
    audit = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'audit', 'agreement-2026-11-30.tsv')
    corpus = corpus_labels()
    rows, missing = [], 0
    for n, raw in enumerate(open(audit, encoding='utf-8'), 1):
        if raw.startswith('#') or not raw.strip():
            continue
        cols = raw.rstrip('\n').split('\t', 5)
        if len(cols) != 6:
            sys.exit('%s:%d: expected 6 TAB-separated fields, got %d' % (audit, n, len(cols)))
        if cols[5] not in corpus:
            missing += 1
            continue
        rows.append((corpus[cols[5]], cols[1], cols[3], cols[2] == 'sure' and cols[4] == 'sure'))
    if missing:
        print('%d audit lines are no longer in the corpus (left out)' % missing)
    compare('alpha vs corpus', [(c, a) for c, a, _, _ in rows])
    compare('beta vs corpus', [(c, b) for c, _, b, _ in rows])
    compare('both sure: alpha', [(c, a) for c, a, _, s in rows if s])
    compare('alpha vs beta', [(a, b) for _, a, b, _ in rows])


if __name__ == '__main__':
    main()
