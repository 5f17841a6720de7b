"""ann_testdata.py - synthetic vectors for the approximate-index tests
(e2e_ann.sh, e2e_ann_kill.sh), imported with CLIPDEX_SRC/tests on sys.path.

Clusters(rng, dim, k) draws clustered unit vectors of uneven cluster sizes
(cluster c has weight 1/(c+1)) around a shared mean direction, with a
decaying spectrum (dimension i scaled by 0.97^i), like CLIP image
embeddings; sample(shift) adds isotropic noise of that size, which moves
queries off the data as text queries are.  write_npy and write_meta write
the .npy and CSV pair `clipdex import` reads; row i's path is
/photos/<i mod 17>/img<i>.jpg.
"""
import math
import struct


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


class Clusters:
    def __init__(self, rng, dim, k):
        self.rng, self.dim, self.k = rng, dim, k
        mean = unit([rng.gauss(0, 1) for _ in range(dim)])
        self.cents = [unit([m * 1.2 + rng.gauss(0, 1) * (0.97 ** i) for i, m in enumerate(mean)])
                      for _ in range(k)]
        self.sizes = [1.0 / (c + 1) for c in range(k)]

    def sample(self, shift=0.0):
        rng = self.rng
        c = rng.choices(range(self.k), self.sizes)[0]
        return unit([x + rng.gauss(0, 0.45) * (0.97 ** i) + shift * rng.gauss(0, 1)
                     for i, x in enumerate(self.cents[c])])


def write_npy(path, rows, dim):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (len(rows), dim)
    hdr += ' ' * (64 - (10 + len(hdr) + 1) % 64) + '\n'
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
        for r in rows:
            f.write(struct.pack('<%df' % dim, *r))


def write_meta(path, first, end):
    with open(path, "w") as m:
        m.write("image_path,width,height\n")
        for i in range(first, end):
            m.write("/photos/%02d/img%06d.jpg,100,80\n" % (i % 17, i))
