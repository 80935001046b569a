#pragma once
// libsolv's C headers, made includable from C++20: Solvable has a member named `requires`, a C++20
// keyword. It is renamed while the headers are read (the layout is unchanged) and reached as
// `solv_requires`. Include this before any other header that might use `requires`.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define requires solv_requires
#include <solv/pool.h>
#include <solv/poolarch.h>
#include <solv/problems.h>
#include <solv/queue.h>
#include <solv/repo.h>
#include <solv/rules.h>
#include <solv/solver.h>
#undef requires
