#pragma once

/// Everything a LearnDrop plugin needs.
#include "learndrop/plugin.h"
#include "learndrop/option_table.h"
#include "learndrop/row_ledger.h"
