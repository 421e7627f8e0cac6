"""Hardware-assisted VMMs (Fisher-Ogden 2006 §3.1): what guest-mode VMMs share (``guest_mode``)."""
