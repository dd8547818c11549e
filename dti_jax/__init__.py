"""dti_jax: five methods of unsupervised visual decomposition in JAX.

Importing the package keeps TensorFlow's start-up lines (its C++ INFO log, the oneDNN
notice) off the terminal of every command of the project, as `dti_jax.main` does:
TensorFlow only serves tf.data here. Values already set in the environment win.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
