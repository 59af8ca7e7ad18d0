"""Everything between nodes: roster, pinned mTLS, index sync, witnesses, OPRF, bundles.

Empty until the federation issues; `node` never imports it (DESIGN.md section 1).
"""
