"""facebench: evaluate face-perception models under the protocols the field's papers use.

Architecture: run the model once into a prediction store, then evaluate many times
(protocols are pure functions of stored predictions and dataset metadata).
"""

__version__ = "0.1.0"
