#!/bin/sh
echo "demo: being written"
