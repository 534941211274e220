// Anchor for the shared precompiled header (see core/src/pch.h).
