"""`roomd-load`: many concurrent rooms driven over HTTP the way real RTCRoom clients drive them."""
