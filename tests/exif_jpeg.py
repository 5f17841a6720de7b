#!/usr/bin/env python3
"""exif_jpeg.py SRC.jpg DST.jpg DESCRIPTION KEYWORDS: copy a JPEG with an
EXIF APP1 segment holding ImageDescription (ASCII) and XPKeywords (UCS-2,
';'-separated), the embedded text `index` reads for the full-text index.
Stdlib only (the tests run where Pillow is absent)."""
import struct, sys
src, dst, desc, kws = sys.argv[1:5]
data = open(src, 'rb').read()
assert data[:2] == b'\xff\xd8'
d = desc.encode() + b'\0'
k = kws.encode('utf-16-le') + b'\0\0'
# TIFF little endian, IFD0 at offset 8 with 2 entries, values after the IFD
n = 2
ifd_size = 2 + n * 12 + 4
off = 8 + ifd_size
ent = b''
ent += struct.pack('<HHII', 0x010E, 2, len(d), off)            # ImageDescription, ASCII
ent += struct.pack('<HHII', 0x9C9E, 1, len(k), off + len(d))   # XPKeywords, BYTE (UCS-2)
tiff = b'II*\0' + struct.pack('<I', 8) + struct.pack('<H', n) + ent + struct.pack('<I', 0) + d + k
app1 = b'Exif\0\0' + tiff
seg = b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1
open(dst, 'wb').write(data[:2] + seg + data[2:])
