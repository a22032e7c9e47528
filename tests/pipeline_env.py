"""Settings (as LTE_* env vars) for a quick full pipeline: tiny shop, hashing basis, small SASRec.
Shared by the end-to-end and browser tests (pytest puts tests/ on sys.path)."""

QUICK = {
    "LTE_DATA__SYNTHETIC_SIZE": "tiny",
    "LTE_BASIS__ENCODER": "hashing",
    "LTE_BASIS__HASHING_DIM": "64",
    "LTE_MODEL__D_MODEL": "32",
    "LTE_MODEL__N_LAYERS": "1",
    "LTE_TRAIN__EPOCHS": "8",
    "LTE_TRAIN__LR": "0.003",
    "LTE_GATE__N_BOOTSTRAP": "200",
}
