"""CAM sources and training methods; each module cites the paper section it implements."""
