#!/bin/sh
cat /hello/greeting.txt
