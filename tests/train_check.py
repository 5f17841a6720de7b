#!/usr/bin/env python3
"""train_check.py - compare a training step with the clip-tiny reference.

Implements the rules of ../shared/fixtures/clip-tiny/expected/train/README.md
("Tolerances") with the standard library only:

  train_check.py FIXTURE [--weights fp32|fp16] [--lastblock] \
      grads=G.safetensors after2=A.safetensors loss=L0,L1,L2

grads: per tensor max|g - g_ref| <= 1e-4 * max(max|g_ref|, 0.01 G) (G = the
largest max|g_ref| of the tensor's group); after2: per element, the update
u = after2 - initial is "off" when |u - u_ref| > 0.01 lr + 2 ulps(ref); at most
max(4, floor(0.01 n)) elements off (none for logit_scale; the token embedding
counts batch rows only and other rows must be unchanged); degenerate tensors
(max|g_ref| < 1e-4 G) need max|u - u_ref| <= 2 lr; in --lastblock mode frozen
tensors must be bit-identical to the initial weights.  loss: relative 1e-5
initially, 1e-4 after each step.  Prints one line per failure and a summary;
exit 0 = pass.
"""
import array
import json
import math
import re
import struct
import sys

LR = 1e-4


def half_to_float(h):
    return struct.unpack('<e', struct.pack('<H', h))[0]


def read_st(path):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    hdr = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in hdr.items():
        if name == '__metadata__':
            continue
        a, b = t['data_offsets']
        raw = data[base + a:base + b]
        dt = t['dtype']
        if dt == 'F32':
            v = array.array('f')
            v.frombytes(raw)
        elif dt == 'F16':
            v = array.array('f', (x[0] for x in struct.iter_unpack('<e', raw)))
        elif dt == 'I64':
            v = array.array('q')
            v.frombytes(raw)
        else:
            continue
        out[name] = (t['shape'], v)
    return out


def group(name):
    m = re.match(r'(vision_model|text_model)\.encoder\.layers\.(\d+)\.', name)
    if m:
        return m.group(1) + m.group(2)
    if name == 'logit_scale':
        return 'logit_scale'
    return 'vision' if name.startswith(('vision_model', 'visual_projection')) else 'text'


def ulp(x):
    x = abs(x)
    if x == 0:
        return 1.4e-45
    e = math.frexp(x)[1]
    return 2.0 ** (e - 24)


TOK = 'text_model.embeddings.token_embedding.weight'


def dense_rows(ref, width):
    """row index -> offset into the stored (possibly row-sparse) tensor"""
    shape, v = ref[TOK]
    if 'text_model.embeddings.token_embedding.rows' in ref:
        rows = ref['text_model.embeddings.token_embedding.rows'][1]
        return {int(r): i * width for i, r in enumerate(rows)}
    return None


def main(argv):
    fixture = argv[1]
    weights, lastblock, files = 'fp32', False, {}
    for a in argv[2:]:
        if a.startswith('--weights='):
            weights = a.split('=', 1)[1]
        elif a == '--lastblock':
            lastblock = True
        else:
            k, v = a.split('=', 1)
            files[k] = v
    sub = fixture + '/expected/train/' + ('fp16/' if weights == 'fp16' else '')
    init = read_st(fixture + ('/model.fp16.safetensors' if weights == 'fp16' else '/model.safetensors'))
    suffix = '_lastblock' if lastblock else ''
    gref = read_st(sub + 'grads' + suffix + '.safetensors')
    aref = read_st(sub + 'after2' + suffix + '.safetensors')
    losses = json.load(open(sub + 'loss.json'))['lastblock' if lastblock else 'full']['loss_per_step']
    fails = []
    width = None
    # group maxima over the full reference gradients
    gfull = read_st(sub + 'grads.safetensors')
    gmax = {}
    for name, (shape, v) in gfull.items():
        if v.typecode != 'f':
            continue
        m = max((abs(x) for x in v), default=0.0)
        gmax[group(name)] = max(gmax.get(group(name), 0.0), m)
    tensors = [k for k, (s, v) in gref.items() if v.typecode == 'f']
    if 'grads' in files:
        got = read_st(files['grads'])
        for name in tensors:
            if name not in got:
                fails.append('grads: %s missing' % name)
                continue
            shape, r = gref[name]
            gshape, g = got[name]
            G = gmax[group(name)]
            mref = max((abs(x) for x in r), default=0.0)
            tol = 1e-4 * max(mref, 0.01 * G)
            if name == TOK:
                W = shape[1]
                rows = dense_rows(gref, W)
                crows = dense_rows(got, W)
                err = 0.0
                for row, off in rows.items():
                    c = crows[row] if crows else row * W
                    for j in range(W):
                        err = max(err, abs(g[c + j] - r[off + j]))
                zero = array.array('f', [0.0] * W)
                nz = 0 if crows else sum(1 for row in range(len(g) // W)
                                         if row not in rows and g[row * W:(row + 1) * W] != zero)
                if nz:
                    fails.append('grads: %s: %d rows outside the batch have a gradient' % (name, nz))
            else:
                if len(g) != len(r):
                    fails.append('grads: %s: %d elements, expected %d' % (name, len(g), len(r)))
                    continue
                err = max((abs(a - b) for a, b in zip(g, r)), default=0.0)
            if not err <= tol:
                fails.append('grads: %s: max|g - g_ref| %.3g > %.3g' % (name, err, tol))
        extra = [k for k in got if k not in gref and not k.endswith('.rows')]
        if extra:
            fails.append('grads: unexpected tensors %s' % extra[:3])
    if 'after2' in files:
        got = read_st(files['after2'])
        for name, (shape, p0) in init.items():
            if p0.typecode != 'f':
                continue
            if name not in got:
                fails.append('after2: %s missing' % name)
                continue
            p = got[name][1]
            if name not in aref:   # frozen
                if p != p0:
                    fails.append('after2: frozen %s changed' % name)
                continue
            ref = aref[name][1]
            G = gmax[group(name)]
            mref = max((abs(x) for x in gfull[name][1]), default=0.0)
            degenerate = mref < 1e-4 * G
            if name == TOK:
                W = shape[1]
                rows = dense_rows(aref, W)
                crows = dense_rows(got, W)
                pairs = []
                for row, off in rows.items():
                    c = crows[row] if crows else row * W
                    for j in range(W):
                        pairs.append((p[c + j], ref[off + j], p0[row * W + j]))
                changed = 0 if crows else sum(1 for row in range(len(p) // W)
                                              if row not in rows and p[row * W:(row + 1) * W] != p0[row * W:(row + 1) * W])
                if changed:
                    fails.append('after2: %s: %d rows outside the batch changed' % (name, changed))
            else:
                pairs = list(zip(p, ref, p0))
            off_n, worst = 0, 0.0
            for a, b, c in pairs:
                d = abs((a - c) - (b - c))
                worst = max(worst, d)
                if d > 0.01 * LR + 2 * ulp(b):
                    off_n += 1
            n = len(pairs)
            allowed = 0 if name == 'logit_scale' else max(4, n // 100)
            if degenerate:
                if worst > 2 * LR:
                    fails.append('after2: %s (degenerate): max|u - u_ref| %.3g lr' % (name, worst / LR))
            elif off_n > allowed:
                fails.append('after2: %s: %d of %d elements off (allowed %d)' % (name, off_n, n, allowed))
    if 'loss' in files:
        got = [float(x) for x in files['loss'].split(',')]
        for i, (a, b) in enumerate(zip(got, losses)):
            tol = (1e-5 if i == 0 else 1e-4) * abs(b)
            if abs(a - b) > tol:
                fails.append('loss[%d]: %.9g, reference %.9g' % (i, a, b))
        if len(got) != len(losses):
            fails.append('loss: %d values, expected %d' % (len(got), len(losses)))
    for f in fails:
        print('FAIL', f)
    print('%s: %s (%s weights, %s, %d tensors)' % ('FAIL' if fails else 'PASS',
          '%d problems' % len(fails) if fails else 'all within tolerance', weights,
          'last block' if lastblock else 'all parameters', len(tensors)))
    return 1 if fails else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
