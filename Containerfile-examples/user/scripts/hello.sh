#!/bin/sh
echo "hello from $(whoami)"
