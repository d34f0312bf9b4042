//! Reading and writing what users have: safetensors checkpoints, `.npy`/`.csv` data, and the
//! measurement/certificate JSON files (written atomically).
