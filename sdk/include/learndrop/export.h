#pragma once

/// Marks a type or function as visible across shared-library boundaries.
///
/// Plugins are built with hidden visibility; every SDK interface is marked
/// visible so that its type information (used by exceptions and virtual
/// calls) is shared between the host and every plugin.
#define LEARNDROP_VISIBLE __attribute__((visibility("default")))
