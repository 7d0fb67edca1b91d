# Generates small HDF5 files in layouts Keras does not write by default, to test the reader.
import h5py, numpy as np
def arange(shape, dt='<f4'):
    return (np.arange(int(np.prod(shape)), dtype=np.float64) * 0.25 - 1.0).astype(dt).reshape(shape)
# 1. libver latest: superblock v3, v2 object headers, link messages; compact + big-endian vars.
with h5py.File('latest_v2.h5', 'w', libver='latest') as f:
    f.create_group('vars')
    v = f.create_group('layers/lstm/cell/vars')
    f.create_group('layers/lstm/vars')
    v.create_dataset('0', data=arange((2, 8)))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE); dcpl.set_layout(h5py.h5d.COMPACT)
    sp = h5py.h5s.create_simple((2, 8))
    h5py.h5d.create(v.id, b'1', h5py.h5t.IEEE_F32LE, sp, dcpl=dcpl).write(h5py.h5s.ALL, h5py.h5s.ALL, arange((2, 8)))
    v.create_dataset('2', data=arange((8,), '>f4'))
    d = f.create_group('layers/dense/vars')
    d.create_dataset('0', data=arange((2, 1)))
    d.create_dataset('1', data=arange((1,)))
# 2. dense link storage: more than 8 links in one group under libver latest.
with h5py.File('dense_links.h5', 'w', libver='latest') as f:
    for i in range(12):
        f.create_group(f'layers/dense_{i}/vars').create_dataset('0', data=arange((1,)))
# 3. chunked, gzip-compressed dataset.
with h5py.File('chunked.h5', 'w') as f:
    f.create_group('layers/dense/vars').create_dataset('0', data=arange((4, 4)), chunks=(2, 2), compression='gzip')
# 4. float64 dataset.
with h5py.File('float64.h5', 'w') as f:
    f.create_group('layers/dense/vars').create_dataset('0', data=arange((2, 2), '<f8'))
